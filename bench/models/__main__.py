"""`python -m bench.models`: train (or find) a profile's offline pairs; see bench.models.cache."""

from bench.models.cache import main

if __name__ == "__main__":
    main()
