"""Stylising: one array (``stylize``), files and videos (``files``), live frames (``live``), timing (``benchmark``)."""
