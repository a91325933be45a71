"""The paper's text classifiers (DAN, (Bi)LSTM, Kim CNN) as Functional models."""

from keras_lowrank.models.blocks import MaskedConv1DMaxPooling
from keras_lowrank.models.blocks import MaskedGlobalAveragePooling1D
from keras_lowrank.models.cnn import cnn_classifier
from keras_lowrank.models.dan import dan_classifier
from keras_lowrank.models.lstm import lstm_classifier
