"""CallCov provider operators."""
