"""CallCov provider sensors."""
