"""The gazetteer lists (places, nationalities, first names, surnames) that
--features gazetteers reads, and build.py, which makes them from their packages."""
