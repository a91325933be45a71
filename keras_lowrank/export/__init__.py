"""Deployment: projection folding and verified TFLite export."""

from keras_lowrank.export.folding import FoldedLookup
from keras_lowrank.export.folding import FoldRecord
from keras_lowrank.export.folding import FoldReport
from keras_lowrank.export.folding import fold_projections
from keras_lowrank.export.tflite import ExportReport
from keras_lowrank.export.tflite import export_tflite
from keras_lowrank.export.tflite import ops_used
from keras_lowrank.export.tflite import run_tflite
