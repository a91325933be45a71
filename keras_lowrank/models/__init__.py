"""Models: the paper's text classifiers (DAN, (Bi)LSTM, Kim CNN) as Functional
models, and the pretrained all-MiniLM-L6-v2 loaded offline as a KerasHub task."""

from keras_lowrank.models.blocks import MaskedConv1DMaxPooling
from keras_lowrank.models.blocks import MaskedGlobalAveragePooling1D
from keras_lowrank.models.cnn import cnn_classifier
from keras_lowrank.models.dan import dan_classifier
from keras_lowrank.models.lstm import lstm_classifier
from keras_lowrank.models.minilm import load_minilm
from keras_lowrank.models.minilm import minilm_folder
