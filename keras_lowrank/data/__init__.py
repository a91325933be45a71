"""Data for text classifiers: bundled datasets, user CSV/TSV folders,
tokenization and vocabularies, and pretrained word vectors."""

from keras_lowrank.data.datasets import SPLIT_SEED
from keras_lowrank.data.datasets import bundled_builder
from keras_lowrank.data.datasets import default_data_dir
from keras_lowrank.data.datasets import list_datasets
from keras_lowrank.data.datasets import load_dataset
from keras_lowrank.data.splits import stratified_split
from keras_lowrank.data.text_classification_data import TextClassificationData
from keras_lowrank.data.text_files import load_text_folder
from keras_lowrank.data.vectors import VectorCoverage
from keras_lowrank.data.vectors import WordVectors
from keras_lowrank.data.vectors import embedding_matrix
from keras_lowrank.data.vectors import load_glove_6b_50d
from keras_lowrank.data.vectors import load_word_vectors
from keras_lowrank.data.vocabulary import OOV_ID
from keras_lowrank.data.vocabulary import PADDING_ID
from keras_lowrank.data.vocabulary import Vocabulary
from keras_lowrank.data.vocabulary import build_vocabulary
from keras_lowrank.data.vocabulary import tokenize
