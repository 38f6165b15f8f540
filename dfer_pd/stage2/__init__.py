"""Stage 2: the PD cohort, Eq. 4 features, the classifiers, cross-validation, Table 3 and the screening model."""
