"""genreg core: generative data augmentation and feature regularization, headless.

Everything the Streamlit app shows is computed here; nothing in this package imports streamlit.
"""

__version__ = "0.1.0"
