"""What the notebook's owner sees and decides: activity, approvals, the audit log, the panel."""
