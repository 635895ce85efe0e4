"""What a student hands in: its files read safely, its code, answers and metadata; starter folders."""
