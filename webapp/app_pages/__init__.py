"""Page scripts run by ``st.navigation`` (a package only so that installs ship them)."""
