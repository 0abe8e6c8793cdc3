"""Paper §5-6 benchmarks, scored as their official code does: loaders, RM-Bench / JudgeBench / RewardBench
rules, MT-Bench, Arena-Hard v2 and WildBench v2 with their judges.
"""
