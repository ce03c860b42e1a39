"""From a distance to a decision: same-person thresholds per level (``calibrate``) from labelled
crops (``labels``) or the validation split, and the verdicts they give (``verdicts``)."""
