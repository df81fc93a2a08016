# vlarisk: rollouts -> datasets -> splits -> trained risk predictors -> results.json
#
# Targets:
#   all    every configured source prepared, trained and evaluated (the quick default)
#          and every multi-model group of `multi_model` (rules/multi.smk); the verdict per model
#          in results/summary.md, printed at the end (rules/summary.smk), and each model's failure
#          detection figure: `snakemake all --report` shows both
#   single results/models/<source>/results.json (or any other output path)
#   paper  everything above plus multi-model groups, ablations, tables and figures (docs/paper.md)
#   compare  `all`, then a table of every results.json under results/ (every experiment):
#          results/comparison/runs.{csv,md}
#
# The config: `configfile:` config/config.yaml, --configfile files and --config values merged over it,
# then `validate` against the schema, which fills in the defaults; `--config experiment=<name>` selects
# one of `experiments`, whose outputs go to results/experiments/<name>/ (rules/common.smk,
# vlarisk.workflow.config_checks). Code, scripts and config/config.yaml are read beside this file,
# outputs written under the working directory, so
# `snakemake -s <repo>/Snakefile --directory <scratch>` and use as a module work (docs/anywhere.md).


report: "report/workflow.rst"


# common.smk validates the config and loads the plan (src/vlarisk/workflow/planning.py); then one file per stage.
include: "rules/common.smk"
include: "rules/summary.smk"
include: "rules/collect.smk"
include: "rules/data.smk"
include: "rules/baselines.smk"
include: "rules/models.smk"
include: "rules/multi.smk"
include: "rules/ablations.smk"
include: "rules/paper.smk"
include: "rules/compare.smk"


localrules:
    all,
    paper,
    split_dataset,
    split_dataset_seeded,
    split_dataset_task_split,


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
        PLAN.report_figures(),
        SUMMARY,
