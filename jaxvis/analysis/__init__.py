"""The paper's analyses as reusable tools (Zeiler & Fergus Secs. 4 and 5)."""
