"""modelport.convert: each conversion is a function from input artifacts to a verified output artifact."""
