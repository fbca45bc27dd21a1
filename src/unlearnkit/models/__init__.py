"""Models: one ``LanguageModel`` interface and the loaders behind it."""

from unlearnkit.models.base import LanguageModel, Prompt, as_messages, last_user_message
from unlearnkit.models.loading import load_model
from unlearnkit.models.scores import AnswerScores

__all__ = ["AnswerScores", "LanguageModel", "Prompt", "as_messages", "last_user_message", "load_model"]
