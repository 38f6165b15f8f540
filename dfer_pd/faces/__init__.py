"""The face path, below stage 1: find and track the face (tracking), its 68 landmarks and aligned crops
(landmarks), and image measures of the face region (measures). Knows nothing of the networks."""
