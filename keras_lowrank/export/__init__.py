"""Deployment: projection folding, verified TFLite export, raw-text files and their runner."""

from keras_lowrank.export.folding import FoldedLookup
from keras_lowrank.export.folding import FoldRecord
from keras_lowrank.export.folding import FoldReport
from keras_lowrank.export.folding import fold_projections
from keras_lowrank.export.tflite import ExportReport
from keras_lowrank.export.tflite import export_tflite
from keras_lowrank.export.tflite import ops_used
from keras_lowrank.export.tflite import run_tflite
from keras_lowrank.export.keras_hub_task import read_task_settings
from keras_lowrank.export.text_runner import TextRunner
from keras_lowrank.export.text_runner import read_tokenizer
from keras_lowrank.export.text_tokenizer import TextTokenizer
from keras_lowrank.export.wordpiece import WordPieceTokenizer
