"""``python -m maskprep_train`` (what ``torchrun ... -m maskprep_train DATA`` runs)."""
from maskprep_train.cli import main

if __name__ == "__main__":
    main()
