"""PyTorch reference for `cargo bench -p qfd-host --bench train_step`, eager or under torch.compile.

The same QFD training step as the Rust trainer: a ResNet-20 student with 4-bit weights and activations (8-bit
first conv and classifier), EWGS-style quantizers with learned bounds and alpha (LSQ-scaled gradients) and straight-through rounding,
a full-precision teacher whose pooled feature is quantized to 4 bits, loss CE + 0.5 * MSE(feature), SGD with
Nesterov momentum and a separate quantizer group, batch 128 of 1x28x28 inputs. Prints one line with the median
step time and images per second. Run by benches/train-speed.sh; needs PyTorch (scripts/setup.sh --bench).

Environment: QFD_BENCH_THREADS (2), QFD_BENCH_STEPS (20), QFD_BENCH_BATCH (128), QFD_BENCH_DEVICE (cpu),
QFD_BENCH_COMPILE (0; 1 compiles both networks' forward passes and the loss with torch.compile's default
inductor backend, what a PyTorch user would reach for; the optimizer step stays eager).
"""

import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def round_ste(x):
    return x + (x.round() - x).detach()


def grad_scaled(x, scale):
    """LSQ gradient scaling: forward x, backward the gradient times scale."""
    y = x * scale
    return (x - y).detach() + y


def lsq_scale(elements, bits):
    return 1.0 / (elements * (2**bits - 1)) ** 0.5


class Bounds(nn.Module):
    def __init__(self, lower, upper):
        super().__init__()
        self.lower = nn.Parameter(torch.tensor([lower]))
        self.upper = nn.Parameter(torch.tensor([upper]))

    def unit(self, x, scale):
        lower, upper = grad_scaled(self.lower, scale), grad_scaled(self.upper, scale)
        return ((x - lower) / (upper - lower)).clamp(0.0, 1.0), lower, upper


class ActQuant(nn.Module):
    """Returns (norm, value): the codes / (L - 1) a conv reads and the reconstructed value."""

    def __init__(self, bits):
        super().__init__()
        self.bits, self.levels = bits, float(2**bits - 1)
        self.bounds = Bounds(0.0, 1.0)

    def forward(self, x, quantize):
        if not quantize:
            return x, x
        unit, lower, upper = self.bounds.unit(x, lsq_scale(x[0].numel(), self.bits))
        norm = round_ste(unit * self.levels) / self.levels
        return norm, lower + (upper - lower) * norm

    def calibrate(self, x):
        with torch.no_grad():
            self.bounds.lower.copy_(x.min().reshape(1))
            upper = x.std() * 3.0 / (1.0 - 2.0 / torch.pi) ** 0.5
            self.bounds.upper.copy_(torch.maximum(upper, x.min() + 1e-3).reshape(1))


class QConv(nn.Module):
    def __init__(self, cin, cout, k, stride, padding, bits):
        super().__init__()
        self.stride, self.padding, self.bits, self.levels = stride, padding, bits, float(2**bits - 1)
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * (2.0 / (cin * k * k)) ** 0.5)
        self.bounds = Bounds(-1.0, 1.0)
        self.alpha = nn.Parameter(torch.ones(1))

    def forward(self, norm, value, quantize):
        if not quantize:
            return F.conv2d(value, self.weight, None, self.stride, self.padding)
        scale = lsq_scale(self.weight.numel(), self.bits)
        k = round_ste(self.bounds.unit(self.weight, scale)[0] * self.levels)
        w = (k * 2.0 - self.levels) / self.levels
        return F.conv2d(norm, w, None, self.stride, self.padding) * grad_scaled(self.alpha, scale).abs()


class ConvBnQ(nn.Module):
    def __init__(self, cin, cout, k, stride, padding, wbits, abits, relu):
        super().__init__()
        self.conv = QConv(cin, cout, k, stride, padding, wbits)
        self.bn = nn.BatchNorm2d(cout)
        self.q = ActQuant(abits)
        self.relu = relu

    def forward(self, x, quantize):
        y = self.bn(self.conv(*x, quantize))
        return self.q(F.relu(y) if self.relu else y, quantize)


class Block(nn.Module):
    def __init__(self, cin, cout, stride, bits):
        super().__init__()
        self.conv1 = ConvBnQ(cin, cout, 3, stride, 1, bits, bits, True)
        self.conv2 = ConvBnQ(cout, cout, 3, 1, 1, bits, bits, False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = ConvBnQ(cin, cout, 1, stride, 0, bits, bits, False)
        self.out = ActQuant(bits)

    def forward(self, x, quantize):
        h = self.conv2(self.conv1(x, quantize), quantize)
        shortcut = self.shortcut(x, quantize)[1] if self.shortcut else x[1]
        return self.out(F.relu(h[1] + shortcut), quantize)


class ResNet20(nn.Module):
    def __init__(self, bits=4, classes=10, feature_bits=None, mean=0.2860, std=0.3530):
        super().__init__()
        self.mean, self.std = mean, std
        self.stem = ConvBnQ(1, 16, 3, 1, 0, 8, bits, True)
        blocks, cin = [], 16
        for s, cout in enumerate([16, 32, 64]):
            for b in range(3):
                blocks.append(Block(cin, cout, 2 if s > 0 and b == 0 else 1, bits))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.feature_q = ActQuant(feature_bits) if feature_bits else None
        self.fc_weight = nn.Parameter(torch.empty(classes, 64).uniform_(-1 / 8, 1 / 8))
        self.fc_bias = nn.Parameter(torch.zeros(classes))
        self.fc_bounds = Bounds(-1.0, 1.0)
        self.fc_alpha = nn.Parameter(torch.ones(1))

    def forward(self, pixels, quantize):
        x = (F.pad(pixels, (1, 1, 1, 1)) - self.mean) / self.std
        h = self.stem((x, x), quantize)
        for block in self.blocks:
            h = block(h, quantize)
        feature = h[1].mean(dim=(2, 3))
        if self.feature_q is not None:
            feature = self.feature_q(feature, True)[1]
        if quantize:
            scale = lsq_scale(self.fc_weight.numel(), 8)
            k = round_ste(self.fc_bounds.unit(self.fc_weight, scale)[0] * 255.0)
            logits = F.linear(feature, (k * 2.0 - 255.0) / 255.0) * grad_scaled(self.fc_alpha, scale).abs() + self.fc_bias
        else:
            logits = F.linear(feature, self.fc_weight, self.fc_bias)
        return logits, feature

    def quant_params(self):
        return [p for n, p in self.named_parameters() if n.endswith(("lower", "upper", "alpha"))]


def calibrate(net, images):
    """Sets every activation quantizer's bounds from the batch, as the trainer's calibration does."""
    hooks = [m.register_forward_pre_hook(lambda m, a: m.calibrate(a[0])) for m in net.modules()
             if isinstance(m, ActQuant)]
    with torch.no_grad():
        net(images, True)
    for h in hooks:
        h.remove()


def main():
    threads = int(os.environ.get("QFD_BENCH_THREADS", "2"))
    steps = int(os.environ.get("QFD_BENCH_STEPS", "20"))
    batch = int(os.environ.get("QFD_BENCH_BATCH", "128"))
    device = torch.device(os.environ.get("QFD_BENCH_DEVICE", "cpu"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    teacher = ResNet20(feature_bits=4).to(device).eval()
    student = ResNet20().to(device).train()
    images = torch.rand(batch, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    calibrate(teacher, images)
    calibrate(student, images)
    quant = {id(p) for p in student.quant_params()}
    weights = [p for p in student.parameters() if id(p) not in quant]
    opt = torch.optim.SGD(
        [{"params": weights, "weight_decay": 5e-4}, {"params": student.quant_params(), "weight_decay": 0.0}],
        lr=1e-2, momentum=0.9, nesterov=True)

    def qfd_loss(images, labels):
        logits, feature = student(images, True)
        with torch.no_grad():
            _, t_feature = teacher(images, False)
        return F.cross_entropy(logits, labels) + 0.5 * F.mse_loss(feature, t_feature)

    compiled = os.environ.get("QFD_BENCH_COMPILE", "0") == "1"
    if compiled:
        qfd_loss = torch.compile(qfd_loss)

    def step():
        loss = qfd_loss(images, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()  # synchronises a GPU

    # Warm-up (under torch.compile, the first steps compile the graphs).
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median, mean = statistics.median(times), statistics.mean(times)
    mode = "compile(inductor)" if compiled else "eager"
    print(f"pytorch {torch.__version__} {mode} resnet20 w4a4 qfd  device {device}  threads {threads}  "
          f"batch {batch}  steps {steps}  median {median * 1e3:.1f} ms  mean {mean * 1e3:.1f} ms  "
          f"images/s {batch / median:.1f}")


if __name__ == "__main__":
    main()
