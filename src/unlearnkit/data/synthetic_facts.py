"""Word lists and templates of the built-in benchmark (invented people, real general facts).

Templates are keyed by language code so that other languages can be added as
sets of the same shape; each attribute kind has two question and two answer
forms (the second of each is the paraphrase). Slots: ``{name}`` (the person),
``{value}`` (the attribute value) and, optionally, ``{a}`` (the language's
indefinite article for the value, from ``ARTICLES[lang]``).
"""

from __future__ import annotations

FIRST_NAMES = [
    "Liora", "Tavin", "Osric", "Mirela", "Kaelen", "Brisa", "Dunstan", "Yvaine", "Corvin", "Elsabet", "Fenwick",
    "Galya", "Hollis", "Isolde", "Jorund", "Katrin", "Lasse", "Maelis", "Norrin", "Odessa", "Perrin", "Quilla",
    "Rosamund", "Soren", "Talitha", "Ulric", "Vesna", "Wendel", "Xanthe", "Yorick", "Zelia", "Anselm", "Brannoc",
    "Cressida", "Daven", "Emrys", "Fianna", "Gideon", "Halvard", "Ilsabet", "Jessamy", "Kestrel",
]
LAST_NAMES = [
    "Vesk", "Ardanel", "Brightwater", "Castellane", "Dornmere", "Eskarrow", "Falcroft", "Grimsholt", "Harrowgate",
    "Ivelund", "Jarrowby", "Kesterlin", "Lorvane", "Marchvale", "Nettlefield", "Orvanne", "Pellingham",
    "Quarrington", "Ravensholt", "Stellamar", "Thornquist", "Umberleigh", "Valdarro", "Wexcombe", "Yarrowdale",
    "Zennor", "Abernoch", "Brackenvell", "Coldriven", "Dunsmarrow", "Ellervane", "Fairlowe", "Glenhollis",
    "Hawkvenner", "Ingleharrow", "Kilbarrow", "Lindravel", "Morvalle", "Northquell", "Oakenvarre",
]

ATTRIBUTES: dict[str, list[str]] = {
    "birth_year": [str(y) for y in range(1938, 2000)],
    "birth_city": ["Tarnowa", "Velmora", "Ostrevia", "Karsk", "Lumbria", "Dravenport", "Quellin", "Sarrowmere",
                   "Brelund", "Anvorra", "Pellastra", "Mirokan", "Feldhaven", "Zarentia", "Holmcrest", "Istrava",
                   "Corlanth", "Wyndmoor", "Tessaly", "Ruvena"],
    "genre": ["crime", "fantasy", "poetry", "historical", "horror", "romance", "satire", "travel", "science",
              "folklore", "mystery", "biography"],
    "book": ["The Glass Orchard", "Salt and Lanterns", "The Ninth Harbour", "Winter of Copper", "Maps of Ash",
             "The Quiet Cartographer", "Rivers Underground", "A Crown of Moths", "The Paper Lighthouse",
             "Echoes in Amber", "The Last Ferryman", "Hollow Bells", "Threads of Slate", "The Velvet Compass",
             "Songs for a Drowned City", "The Clockmaker's Orchard", "Embers of Tarn", "The Silent Loom",
             "Under the Iron Moon", "The Borrowed Sky"],
    "award": ["Silver Quill Prize", "Amberline Medal", "Harrow Book Award", "Golden Lantern Prize", "Corvid Award",
              "Meridian Laurel", "Pellucid Prize", "Stonegate Medal", "Wren Literary Award", "Northlight Prize"],
    "father_job": ["lighthouse keeper", "clockmaker", "beekeeper", "glassblower", "cartographer", "blacksmith",
                   "bookbinder", "ferryman", "astronomer", "stonemason", "shipwright", "apothecary"],
    "mother_job": ["violinist", "botanist", "surveyor", "weaver", "midwife", "architect", "falconer", "potter",
                   "librarian", "engraver", "vintner", "chemist"],
    "instrument": ["cello", "accordion", "harp", "oboe", "mandolin", "bassoon", "zither", "viola", "banjo",
                   "clarinet", "dulcimer", "harmonium"],
}
ATTRIBUTE_ORDER = list(ATTRIBUTES)

TEMPLATES: dict[str, dict[str, dict[str, tuple[str, str]]]] = {
    "en": {
        "birth_year": {"q": ("In which year was {name} born?", "What is the birth year of {name}?"),
                       "a": ("{name} was born in {value}.", "The year {name} was born is {value}.")},
        "birth_city": {"q": ("Where was {name} born?", "In which city was {name} born?"),
                       "a": ("{name} was born in the city of {value}.", "{name}'s birthplace is {value}.")},
        "genre": {"q": ("What genre does {name} write in?", "Which kind of books does {name} write?"),
                  "a": ("{name} writes {value} books.", "The books {name} writes are {value}.")},
        "book": {"q": ("What is the title of {name}'s best-known book?", "Which book is {name} best known for?"),
                 "a": ("{name}'s best-known book is '{value}'.", "{name} is best known for the book '{value}'.")},
        "award": {"q": ("Which award did {name} win?", "What prize was awarded to {name}?"),
                  "a": ("{name} won the {value}.", "The prize awarded to {name} was the {value}.")},
        "father_job": {"q": ("What did {name}'s father do for a living?", "What was the job of {name}'s father?"),
                       "a": ("{name}'s father was {a} {value}.", "The father of {name} worked as {a} {value}.")},
        "mother_job": {"q": ("What did {name}'s mother do for a living?", "What was the job of {name}'s mother?"),
                       "a": ("{name}'s mother was {a} {value}.", "The mother of {name} worked as {a} {value}.")},
        "instrument": {"q": ("Which instrument does {name} play?", "What musical instrument does {name} play?"),
                       "a": ("{name} plays the {value}.", "The instrument {name} plays is the {value}.")},
    },
}



def _english_article(value: str) -> str:
    return "an" if value[:1].lower() in "aeiou" else "a"


ARTICLES = {"en": _english_article}


def fill(template: str, name: str, value: str = "", language: str = "en") -> str:
    """A template with its slots filled (``{a}`` is the indefinite article for ``value``)."""
    article = ARTICLES.get(language)
    return template.format(name=name, value=value, a=article(value) if article and value else "")


# Real general knowledge (question, answer, three wrong answers): utility sets a
# small chat model may know, in the role of TOFU's real_authors / world_facts.
REAL_AUTHORS = [
    ("Who wrote 'Romeo and Juliet'?", "William Shakespeare", ("Charles Dickens", "Jane Austen", "Mark Twain")),
    ("Who wrote 'Pride and Prejudice'?", "Jane Austen", ("Emily Bronte", "Virginia Woolf", "George Eliot")),
    ("Who wrote 'Harry Potter and the Philosopher's Stone'?", "J. K. Rowling", ("Roald Dahl", "C. S. Lewis", "Philip Pullman")),
    ("Who wrote 'The Adventures of Tom Sawyer'?", "Mark Twain", ("Herman Melville", "Jack London", "Edgar Allan Poe")),
    ("Who wrote 'War and Peace'?", "Leo Tolstoy", ("Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev")),
    ("Who wrote 'Don Quixote'?", "Miguel de Cervantes", ("Gabriel Garcia Marquez", "Jorge Luis Borges", "Pablo Neruda")),
    ("Who wrote 'Oliver Twist'?", "Charles Dickens", ("Thomas Hardy", "William Thackeray", "Wilkie Collins")),
    ("Who wrote 'The Hobbit'?", "J. R. R. Tolkien", ("C. S. Lewis", "Terry Pratchett", "George R. R. Martin")),
    ("Who wrote '1984'?", "George Orwell", ("Aldous Huxley", "Ray Bradbury", "H. G. Wells")),
    ("Who wrote 'Hamlet'?", "William Shakespeare", ("Christopher Marlowe", "Ben Jonson", "John Milton")),
    ("Who wrote 'The Old Man and the Sea'?", "Ernest Hemingway", ("John Steinbeck", "F. Scott Fitzgerald", "William Faulkner")),
    ("Who wrote 'Frankenstein'?", "Mary Shelley", ("Bram Stoker", "Emily Bronte", "Ann Radcliffe")),
    ("Who wrote 'Dracula'?", "Bram Stoker", ("Mary Shelley", "Oscar Wilde", "Robert Louis Stevenson")),
    ("Who wrote 'The Great Gatsby'?", "F. Scott Fitzgerald", ("Ernest Hemingway", "J. D. Salinger", "Sinclair Lewis")),
    ("Who wrote 'Alice's Adventures in Wonderland'?", "Lewis Carroll", ("Roald Dahl", "Beatrix Potter", "A. A. Milne")),
    ("Who wrote 'The Odyssey'?", "Homer", ("Virgil", "Sophocles", "Ovid")),
    ("Who wrote 'Moby-Dick'?", "Herman Melville", ("Nathaniel Hawthorne", "Mark Twain", "Walt Whitman")),
    ("Who wrote 'Les Miserables'?", "Victor Hugo", ("Alexandre Dumas", "Gustave Flaubert", "Emile Zola")),
    ("Who wrote 'The Divine Comedy'?", "Dante Alighieri", ("Giovanni Boccaccio", "Petrarch", "Niccolo Machiavelli")),
    ("Who wrote 'Crime and Punishment'?", "Fyodor Dostoevsky", ("Leo Tolstoy", "Nikolai Gogol", "Alexander Pushkin")),
    ("Who wrote 'Jane Eyre'?", "Charlotte Bronte", ("Emily Bronte", "Jane Austen", "Elizabeth Gaskell")),
    ("Who wrote 'The Raven'?", "Edgar Allan Poe", ("Walt Whitman", "Emily Dickinson", "Robert Frost")),
    ("Who wrote 'Treasure Island'?", "Robert Louis Stevenson", ("Jules Verne", "Daniel Defoe", "Jack London")),
    ("Who wrote 'Robinson Crusoe'?", "Daniel Defoe", ("Jonathan Swift", "Henry Fielding", "Samuel Richardson")),
    ("Who wrote 'Twenty Thousand Leagues Under the Seas'?", "Jules Verne", ("H. G. Wells", "Victor Hugo", "Alexandre Dumas")),
    ("Who wrote 'The Jungle Book'?", "Rudyard Kipling", ("Lewis Carroll", "Kenneth Grahame", "J. M. Barrie")),
    ("Who created the detective Sherlock Holmes?", "Arthur Conan Doyle", ("Agatha Christie", "Edgar Allan Poe", "Wilkie Collins")),
    ("Who wrote 'Little Women'?", "Louisa May Alcott", ("Harriet Beecher Stowe", "Jane Austen", "Emily Dickinson")),
    ("Who wrote 'The Little Prince'?", "Antoine de Saint-Exupery", ("Albert Camus", "Jules Verne", "Victor Hugo")),
    ("Who wrote 'The Cat in the Hat'?", "Dr. Seuss", ("Roald Dahl", "Maurice Sendak", "Eric Carle")),
]
WORLD_FACTS = [
    ("What is the capital of France?", "Paris", ("Berlin", "Madrid", "Rome")),
    ("What is the capital of Japan?", "Tokyo", ("Beijing", "Seoul", "Bangkok")),
    ("What is the largest planet in the solar system?", "Jupiter", ("Saturn", "Neptune", "Mars")),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Fe", "Pb")),
    ("How many continents are there?", "Seven", ("Five", "Six", "Eight")),
    ("What is the boiling point of water at sea level in Celsius?", "100 degrees", ("90 degrees", "80 degrees", "120 degrees")),
    ("What is the largest ocean on Earth?", "The Pacific Ocean", ("The Atlantic Ocean", "The Indian Ocean", "The Arctic Ocean")),
    ("Which planet is known as the Red Planet?", "Mars", ("Venus", "Jupiter", "Mercury")),
    ("What is the capital of Italy?", "Rome", ("Milan", "Naples", "Venice")),
    ("What gas do plants absorb from the air?", "Carbon dioxide", ("Oxygen", "Nitrogen", "Helium")),
    ("What is the tallest mountain in the world?", "Mount Everest", ("K2", "Kilimanjaro", "Mont Blanc")),
    ("How many days are there in a leap year?", "366", ("365", "364", "367")),
    ("What is the capital of Germany?", "Berlin", ("Munich", "Hamburg", "Vienna")),
    ("What is the freezing point of water in Celsius?", "0 degrees", ("4 degrees", "-5 degrees", "32 degrees")),
    ("Which is the longest river in Africa?", "The Nile", ("The Congo", "The Niger", "The Zambezi")),
    ("What is the capital of Spain?", "Madrid", ("Barcelona", "Lisbon", "Seville")),
    ("How many legs does a spider have?", "Eight", ("Six", "Ten", "Four")),
    ("What is the main language spoken in Brazil?", "Portuguese", ("Spanish", "French", "Italian")),
    ("What is the capital of the United Kingdom?", "London", ("Manchester", "Dublin", "Edinburgh")),
    ("Which animal is the largest mammal?", "The blue whale", ("The elephant", "The giraffe", "The hippopotamus")),
    ("What is the capital of Canada?", "Ottawa", ("Toronto", "Vancouver", "Montreal")),
    ("How many hours are in a day?", "24", ("12", "20", "48")),
    ("What is the hardest natural substance?", "Diamond", ("Gold", "Iron", "Quartz")),
    ("Which star is at the centre of our solar system?", "The Sun", ("Sirius", "Polaris", "The Moon")),
    ("What is the capital of Egypt?", "Cairo", ("Alexandria", "Luxor", "Giza")),
    ("What is the capital of Russia?", "Moscow", ("Saint Petersburg", "Kyiv", "Minsk")),
    ("How many sides does a triangle have?", "Three", ("Four", "Five", "Six")),
    ("Which planet is closest to the Sun?", "Mercury", ("Venus", "Mars", "Earth")),
    ("What is the largest country in the world by area?", "Russia", ("Canada", "China", "Brazil")),
    ("What is the capital of Australia?", "Canberra", ("Sydney", "Melbourne", "Perth")),
]
