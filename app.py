"""genreg: the Streamlit app. Run with ``streamlit run app.py``."""

import streamlit as st

st.set_page_config(page_title="genreg", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/feature_space.py", title="Feature space", icon=":material/scatter_plot:"),
    st.Page("app_pages/reverse_step.py", title="Reverse start step", icon=":material/history:"),
    st.Page("app_pages/meta_latents.py", title="Meta-selected latents", icon=":material/auto_awesome:"),
    st.Page("app_pages/reference_vectors.py", title="AdaRand references", icon=":material/my_location:"),
    st.Page("app_pages/training_runs.py", title="Training runs", icon=":material/monitoring:"),
]
st.navigation(pages).run()
