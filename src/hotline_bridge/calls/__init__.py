"""Live calls: the model of who talks to whom, fed by AMI events, and its API resource."""
