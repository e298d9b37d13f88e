"""The AI Dock backend's package, as far as aidock-provision needs it: its models."""
