"""Training code: the LightningModule, callbacks and run helpers. No architecture lives here."""
