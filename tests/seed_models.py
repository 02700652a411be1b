"""The seed write-up's hand-written networks (Parts A, B, C), transcribed with the OCR undone.

They are the oracle the compiled specs are compared with: same parameter order, same outputs.
Constructor signature as in the course: (kernel, num_filters, num_colours, num_in_channels).
"""
from __future__ import annotations

import torch
from torch import nn


class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel: int = 3, num_filters: int = 32, num_colours: int = 24, num_in_channels: int = 1) -> None:
        super().__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding)
        self.maxpool1 = nn.MaxPool2d(2, 2)
        self.norm1 = nn.BatchNorm2d(num_filters)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=padding)
        self.maxpool2 = nn.MaxPool2d(2, 2)
        self.norm2 = nn.BatchNorm2d(2 * num_filters)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(2 * num_filters, num_filters, kernel, padding=padding)
        self.upsample3 = nn.Upsample(scale_factor=2)
        self.norm3 = nn.BatchNorm2d(num_filters)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(num_filters, num_colours, kernel, padding=padding)
        self.upsample4 = nn.Upsample(scale_factor=2)
        self.norm4 = nn.BatchNorm2d(num_colours)
        self.relu4 = nn.ReLU()
        self.conv5 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l1_conv = self.conv1(x)
        l1_maxp = self.maxpool1(l1_conv)
        l1_norm = self.norm1(l1_maxp)
        layer1_output = self.relu1(l1_norm)
        l2_conv = self.conv2(layer1_output)
        l2_maxp = self.maxpool2(l2_conv)
        l2_norm = self.norm2(l2_maxp)
        layer2_output = self.relu2(l2_norm)
        l3_conv = self.conv3(layer2_output)
        l3_maxp = self.upsample3(l3_conv)
        l3_norm = self.norm3(l3_maxp)
        layer3_output = self.relu3(l3_norm)
        l4_conv = self.conv4(layer3_output)
        l4_maxp = self.upsample4(l4_conv)
        l4_norm = self.norm4(l4_maxp)
        layer4_output = self.relu4(l4_norm)
        return self.conv5(layer4_output)


class ConvTransposeNet(nn.Module):
    def __init__(self, kernel: int = 3, num_filters: int = 32, num_colours: int = 24, num_in_channels: int = 1) -> None:
        super().__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=1, stride=2)
        self.norm1 = nn.BatchNorm2d(num_filters)
        self.relu1 = nn.ReLU()
        self.sequence1 = nn.Sequential(self.conv1, self.norm1, self.relu1)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=1, stride=2)
        self.norm2 = nn.BatchNorm2d(2 * num_filters)
        self.relu2 = nn.ReLU()
        self.sequence2 = nn.Sequential(self.conv2, self.norm2, self.relu2)
        self.conv3 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel_size=kernel,
                                        stride=2, dilation=1, padding=1, output_padding=1)
        self.norm3 = nn.BatchNorm2d(num_filters)
        self.relu3 = nn.ReLU()
        self.sequence3 = nn.Sequential(self.conv3, self.norm3, self.relu3)
        self.conv4 = nn.ConvTranspose2d(num_filters, num_colours, kernel_size=kernel,
                                        stride=2, dilation=1, padding=1, output_padding=1)
        self.norm4 = nn.BatchNorm2d(num_colours)
        self.relu4 = nn.ReLU()
        self.sequence4 = nn.Sequential(self.conv4, self.norm4, self.relu4)
        self.conv5 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer1 = self.sequence1(x)
        layer2 = self.sequence2(layer1)
        layer3 = self.sequence3(layer2)
        layer4 = self.sequence4(layer3)
        return self.conv5(layer4)


class UNet(nn.Module):
    def __init__(self, kernel: int = 3, num_filters: int = 32, num_colours: int = 24, num_in_channels: int = 1) -> None:
        super().__init__()
        padding = kernel // 2
        stride = 2
        output_padding = 1
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding, stride=stride)
        self.norm1 = nn.BatchNorm2d(num_filters)
        self.relu1 = nn.ReLU()
        self.sequence1 = nn.Sequential(self.conv1, self.norm1, self.relu1)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=padding, stride=stride)
        self.norm2 = nn.BatchNorm2d(2 * num_filters)
        self.relu2 = nn.ReLU()
        self.sequence2 = nn.Sequential(self.conv2, self.norm2, self.relu2)
        self.conv3 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel_size=kernel, stride=stride,
                                        dilation=1, padding=padding, output_padding=output_padding)
        self.norm3 = nn.BatchNorm2d(num_filters)
        self.relu3 = nn.ReLU()
        self.sequence3 = nn.Sequential(self.conv3, self.norm3, self.relu3)
        self.conv4 = nn.ConvTranspose2d(num_filters + num_filters, num_colours, kernel_size=kernel, stride=stride,
                                        dilation=1, padding=padding, output_padding=output_padding)
        self.norm4 = nn.BatchNorm2d(num_colours)
        self.relu4 = nn.ReLU()
        self.sequence4 = nn.Sequential(self.conv4, self.norm4, self.relu4)
        self.conv5 = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer1 = self.sequence1(x)
        layer2 = self.sequence2(layer1)
        layer3 = self.sequence3(layer2)
        layer4_input = torch.cat((layer3, layer1), dim=1)
        layer4 = self.sequence4(layer4_input)
        layer5_input = torch.cat((x, layer4), dim=1)
        return self.conv5(layer5_input)


SEED = {
    "pool_upsample": PoolUpsampleNet,
    "conv_transpose": ConvTransposeNet,
    "unet": UNet,
}
