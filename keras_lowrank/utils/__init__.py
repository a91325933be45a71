"""Small helpers shared by the package: atomic file writes."""

from keras_lowrank.utils.atomic_write import atomic_open
from keras_lowrank.utils.atomic_write import atomic_path
from keras_lowrank.utils.atomic_write import save_model
from keras_lowrank.utils.atomic_write import write_bytes
from keras_lowrank.utils.atomic_write import write_json
from keras_lowrank.utils.atomic_write import write_text
