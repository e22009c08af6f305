"""Video grounding (OVG-HQ, spec video.md section 3): metrics now, the streaming grounder and models to come."""
