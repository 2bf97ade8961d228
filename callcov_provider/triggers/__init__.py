"""CallCov provider triggers."""
