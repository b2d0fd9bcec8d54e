"""After the handoff: the assessment figures and the quarterly joint analysis report."""
