"""aar-ray: a lab of automated alignment researchers on Ray (README.md, "Architecture")."""
