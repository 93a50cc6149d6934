"""speechbrain-turbo: Turbo twin-pass multi-modal contrastive classification
for SpeechBrain.

Authors
 * speechbrain-turbo contributors
"""
