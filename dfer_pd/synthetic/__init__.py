"""The synthetic world: procedurally rendered faces written as DFEW and as a PD cohort."""
