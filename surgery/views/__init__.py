"""What people read: the visualizer, HTML reports, diffs and summaries."""
