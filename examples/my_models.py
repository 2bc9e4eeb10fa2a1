"""A model of your own, ablated like ablate's MLP and CNN: a small ResNet-style network for 1x28x28 images.

Its constructor takes what ablate passes (in_shape, n_classes) and the factors it declares (bn, dropout, width);
ablate.nn's blocks give bn and dropout the same meaning as in ablate's own models. From this folder:

    python -m ablate model=custom model.target=my_models.SmallResNet model.bn=post model.dropout=0.2
    python -m ablate -m model=custom model.target=my_models.SmallResNet model.bn=pre,post,none seed=0,1
    python -m ablate model=custom model.target=my_models.SmallResNet +model.kwargs.width=32
"""

from torch import nn

from ablate.nn import Dropout, block, norm_act


class ResidualBlock(nn.Module):
    """x + f(x), f = conv, then BatchNorm and ReLU as ``bn`` places them, conv; then the same after the sum, and
    dropout."""

    def __init__(self, channels: int, bn: str, dropout: float) -> None:
        super().__init__()
        first, second = (nn.Conv2d(channels, channels, 3, padding=1) for _ in range(2))
        self.branch = nn.Sequential(first, *norm_act(bn, first), second)
        self.after = nn.Sequential(*norm_act(bn, second), Dropout(dropout))

    def forward(self, x):
        return self.after(x + self.branch(x))


class SmallResNet(nn.Module):
    def __init__(self, in_shape, n_classes, bn="pre", dropout=0.0, width=16):
        super().__init__()
        stem = nn.Conv2d(in_shape[0], width, 3, padding=1)
        self.features = nn.Sequential(block(stem, bn, dropout), ResidualBlock(width, bn, dropout), nn.MaxPool2d(2),
                                      ResidualBlock(width, bn, dropout), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.features(x))
