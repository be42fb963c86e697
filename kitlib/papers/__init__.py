"""Paper-specific tables and figures, one module per notebook; the generic logic lives in kitlib."""
