"""Input checks of the rules that take one array and integer class labels."""

from keras_local.rules.labels import check_classification_data
from keras_local.rules.labels import check_label_shape


class ClassifierInputChecks:
    """`validate_data` and `validate_shapes` for a `LocalModel` whose
    inputs are one array and whose targets are integer labels in
    `[0, num_classes)`. The model defines `_check_input_rank(shape)`, which
    raises `ValueError` on an input shape it cannot take."""

    def validate_data(self, x, y=None, sample_weight=None):
        check_classification_data(
            type(self).__name__, x, y, self.num_classes, self._check_input_rank
        )

    def validate_shapes(self, x, y=None):
        self._check_input_rank(tuple(x.shape))
        if y is not None:
            check_label_shape(y.shape)
