"""The network, its losses and penalties, and the LightningModule that trains them."""
