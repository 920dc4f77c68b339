"""torchvision-layout CNN backbones and their registry.

``MODELS[name](num_classes=..., dropout=...)`` builds a Flax module whose
``__call__(x, *, train, return_features=False, feature_offsets=None)`` takes
NHWC images and returns logits (or ``(logits, features)``);
``convert.load_pretrained(name, path, ...)`` fills it from a torchvision file.
``GRADCAM_LAYERS`` names each model's last conv feature map;
``classifier.ImageClassifier`` wraps a backbone for one-channel images.
"""

from mammojax.models.cnn.densenet import DenseNet121
from mammojax.models.cnn.mobilenet import MobileNetV2
from mammojax.models.cnn.resnet import ResNet18, ResNet34
from mammojax.models.cnn.shufflenet import ShuffleNetV2X1_0

MODELS = {
    'resnet18': ResNet18,
    'resnet34': ResNet34,
    'densenet121': DenseNet121,
    'mobilenet_v2': MobileNetV2,
    'shufflenet_v2_x1_0': ShuffleNetV2X1_0,
}

GRADCAM_LAYERS = {
    'resnet18': 'layer4',
    'resnet34': 'layer4',
    'densenet121': 'features',
    'mobilenet_v2': 'features',
    'shufflenet_v2_x1_0': 'conv5',
}


def create_model(name: str, /, **kwargs):
  """Builds registry model ``name`` with constructor ``kwargs``.

  ``classifier.ImageClassifier`` builds its backbone with it (``kwargs``
  may hold the submodule's own ``name``).
  """
  if name not in MODELS:
    raise KeyError(f'unknown CNN {name!r}; known: {sorted(MODELS)}')
  return MODELS[name](**kwargs)
