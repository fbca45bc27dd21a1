"""Data: question/answer records, benchmark loaders, task roles, targets, the built-in benchmark."""

from unlearnkit.data.loading import load_split
from unlearnkit.data.records import QARecord
from unlearnkit.data.synthetic import builtin_benchmark_dir, generate_benchmark
from unlearnkit.data.targets import Target, targets_from_records
from unlearnkit.data.task import TaskData, TaskSplits, load_task

__all__ = ["QARecord", "Target", "TaskData", "TaskSplits", "builtin_benchmark_dir", "generate_benchmark",
           "load_split", "load_task", "targets_from_records"]
