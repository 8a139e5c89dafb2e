"""The paper's models and its baselines, as Keras 3 models (TensorFlow backend).

``autoencoder`` compresses the targets into codes (paper 2.2), ``emlp`` maps
landmarks to codes (2.3), ``dgex`` is the D-GEX baseline, ``linear`` the LINCS
least-squares baseline. ``schedule`` holds the learning-rate and early-stopping
rules they train with.
"""
