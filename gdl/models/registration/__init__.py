"""Three-step point-cloud registration: robust-OT pre-alignment, deep flow, robust-OT fine-tuning."""
