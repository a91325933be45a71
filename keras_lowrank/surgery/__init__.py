"""Model surgery: swap trained `Embedding` tables for low-rank factors."""

from keras_lowrank.surgery.factorize_embeddings import factorize_embeddings
from keras_lowrank.surgery.factorize_embeddings import find_embeddings
from keras_lowrank.surgery.report import ConversionReport
from keras_lowrank.surgery.report import LayerConversion
