# The verdict of the run (vlarisk.report.summary): one row per model of `all` (per source of a
# multi-model) in results/summary.md, which `all` and `paper` build last and which is printed when
# the run ends. It also keeps a copy of each results.json under results/history/ (vlarisk.workflow.runs), so
# a re-run overwrites no earlier version. A cheap local job: it reads the results.json files only.
import time

SUMMARY = paths.summary
# the same as a page, shown in `snakemake all --report`
SUMMARY_HTML = paths.summary_html
_run_started = time.time()


localrules:
    summary,


rule summary:
    input:
        runs=PLAN.all_targets(),
        code=code_for("write_summary"),
    output:
        md=SUMMARY,
        html=report(
            SUMMARY_HTML,
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        paths.log_path("summary", "summary"),
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python {input.code[0]:q} {input.runs:q} --output {output.md:q} --html {output.html:q}"
        " --archive > {log:q} 2>&1"


onsuccess:
    if os.path.exists(SUMMARY) and os.path.getmtime(SUMMARY) >= _run_started:
        with open(SUMMARY, encoding="utf-8") as handle:
            print(f"\n{SUMMARY}:\n{handle.read()}")
