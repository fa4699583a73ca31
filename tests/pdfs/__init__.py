"""Hostile and clean PDFs for the upload validator, built with pikepdf at test time."""
