"""Streamlit-side helpers shared by the pages: the sidebar, cached models, image rendering."""
