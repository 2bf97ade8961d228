"""CallCov provider hooks."""
