"""Problem 1: Variational Auto-Encoder -- code cells exported from the notebook.

Auto-encoder and beta-VAE on MNIST (28x28, pixels in [0, 1]), latent size nz = 64.
The plotting and experiment cells are left out; this file only defines the models,
the data loader and the training / sampling functions.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def make_data_loader(dataset, batch_size, num_workers):
    """Shuffling DataLoader over `dataset` (MNIST with ToTensor, batches of (images, labels))."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)


# ---------------------------------------------------------------------------
# Auto-encoder
# ---------------------------------------------------------------------------

class Encoder(nn.Module):
    """Conv encoder: 1x28x28 -> 32x14x14 -> 64x7x7 -> 128x3x3 -> 256x1x1 -> Linear(256, nz).

    `nz` is the size of the OUTPUT, so the VAE builds Encoder(2 * nz) to get mean and log sigma.
    """

    def __init__(self, nz):
        super().__init__()
        self.net = nn.Sequential(
            # 28x28 -> 14x14: (28 + 2*1 - 4) / 2 + 1 = 14
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            # 14x14 -> 7x7: (14 + 2*1 - 4) / 2 + 1 = 7
            nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(0.2),
            # 7x7 -> 3x3: (7 - 3) / 2 + 1 = 3
            nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=0),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            # 3x3 -> 1x1: (3 - 3) / 1 + 1 = 1
            nn.Conv2d(128, 256, kernel_size=3, stride=1, padding=0),
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(256, nz),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """Mirror of the encoder: Linear(nz, 256) -> 256x1x1 -> 128x3x3 -> 64x7x7 -> 32x14x14 -> 1x28x28."""

    def __init__(self, nz):
        super().__init__()
        self.fc = nn.Linear(nz, 256)
        self.net = nn.Sequential(
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2),
            # 1x1 -> 3x3: (1 - 1) * 1 + 3 = 3
            nn.ConvTranspose2d(256, 128, kernel_size=3, stride=1, padding=0),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            # 3x3 -> 7x7: (3 - 1) * 2 + 3 = 7
            nn.ConvTranspose2d(128, 64, kernel_size=3, stride=2, padding=0),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(0.2),
            # 7x7 -> 14x14: (7 - 1) * 2 - 2*1 + 4 = 14
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.LeakyReLU(0.2),
            # 14x14 -> 28x28: (14 - 1) * 2 - 2*1 + 4 = 28
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),
            nn.Sigmoid(),  # pixels are in [0, 1]
        )

    def forward(self, z):
        h = self.fc(z).view(-1, 256, 1, 1)  # reshape to (256, 1, 1)
        return self.net(h)


class AutoEncoder(nn.Module):
    def __init__(self, nz):
        super().__init__()
        self.encoder = Encoder(nz)
        self.decoder = Decoder(nz)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def reconstruct(self, x):
        """The AE is deterministic, so reconstructing is just a forward pass."""
        return self.forward(x)


def train_autoencoder(model, data_loader, epochs, learning_rate, device):
    """Train the AE with Adam and an MSE reconstruction loss; return the loss of every iteration."""
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    for _ in range(epochs):
        for images, _labels in data_loader:
            images = images.to(device)
            rec = model(images)
            loss = F.mse_loss(rec, images)

            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def generate_samples(model, n, nz, device):
    """Decode n latent vectors drawn from N(0, I); returns a [n, 1, 28, 28] tensor."""
    model.to(device)
    model.eval()  # BatchNorm uses its running statistics
    with torch.no_grad():
        z = torch.randn(n, nz, device=device)
        samples = model.decoder(z)
    return samples


# ---------------------------------------------------------------------------
# Variational auto-encoder
# ---------------------------------------------------------------------------

def kl_divergence(mu1, log_sigma1, mu2, log_sigma2):
    """KL(N(mu1, sigma1^2) || N(mu2, sigma2^2)) per dimension, from log standard deviations (handout helper)."""
    return (log_sigma2 - log_sigma1) + (torch.exp(log_sigma1) ** 2 + (mu1 - mu2) ** 2) / (
        2 * torch.exp(log_sigma2) ** 2
    ) - 0.5


class VAE(nn.Module):
    def __init__(self, nz, beta=1.0):
        super().__init__()
        self.nz = nz
        self.beta = beta
        self.encoder = Encoder(2 * nz)  # first nz outputs: mean, last nz: log sigma
        self.decoder = Decoder(nz)

    def forward(self, x):
        q = self.encoder(x)
        mu, log_sigma = q[:, : self.nz], q[:, self.nz :]
        # reparameterization trick: z = mu + sigma * eps, eps ~ N(0, I)
        eps = torch.randn_like(mu)
        z = mu + torch.exp(log_sigma) * eps
        return {"q": q, "rec": self.decoder(z)}

    def loss(self, x, outputs):
        q, rec = outputs["q"], outputs["rec"]
        mu, log_sigma = q[:, : self.nz], q[:, self.nz :]

        # reconstruction: MSE averaged over all pixels
        rec_loss = F.mse_loss(rec, x)

        # KL(q(z|x) || N(0, I)): summed over latent dimensions, averaged over the batch
        zeros = torch.zeros_like(mu)
        kl_loss = kl_divergence(mu, log_sigma, zeros, zeros).sum(dim=1).mean()

        return rec_loss + self.beta * kl_loss, {"rec_loss": rec_loss, "kl_loss": kl_loss}

    def reconstruct(self, x):
        """Decode the posterior mean (no sampling)."""
        mu = self.encoder(x)[:, : self.nz]
        return self.decoder(mu)


def train_vae(model, data_loader, epochs, learning_rate, device):
    """Train the VAE with Adam on model.loss; return (rec_losses, kl_losses), one value per iteration."""
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    rec_losses, kl_losses = [], []
    for _ in range(epochs):
        for images, _labels in data_loader:
            images = images.to(device)
            outputs = model(images)
            total_loss, losses = model.loss(images, outputs)

            optimizer.zero_grad()
            total_loss.backward()
            optimizer.step()
            rec_losses.append(losses["rec_loss"].item())
            kl_losses.append(losses["kl_loss"].item())
    return rec_losses, kl_losses
