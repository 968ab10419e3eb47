"""Results cohorts per journey step and variant (docs/results.md, "Results per step and variant").

Existing cohorts become the whole-group ones (step 0). Until now every log row was step 1 with no variant, so each
day's step-1 cohorts are its reached cohorts copied: exact, and final days (a pruned log) keep theirs. A day whose log
already holds a row of another step or a named variant (written before this migration) is marked stale, so the
stats count it from the log until a refresh recounts it.
"""

from django.db import migrations, models

COPY_REACHED_AS_STEP_1 = """
INSERT INTO autoengagement_resultscohort (day_id, measure, previous_date, customers, step, variant)
SELECT day_id, measure, previous_date, customers, 1, ''
FROM autoengagement_resultscohort
WHERE step = 0 AND measure IN ('reached', 'reached_back')
"""

MARK_DAYS_WITH_STEPS_STALE = """
UPDATE autoengagement_resultsday SET stale = TRUE
WHERE EXISTS (
    SELECT 1 FROM notifications_notificationlog l
    WHERE l.business_id = autoengagement_resultsday.business_id AND l.run_date = autoengagement_resultsday.run_date
    AND l.type = 'auto_reengagement' AND (l.step <> 1 OR l.variant <> '')
)
"""

DELETE_STEP_COHORTS = "DELETE FROM autoengagement_resultscohort WHERE step <> 0"


class Migration(migrations.Migration):

    dependencies = [
        ('autoengagement', '0008_config_steps'),
        ('notifications', '0008_log_step_variant_html'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='resultscohort',
            name='results_cohort_unique',
        ),
        migrations.RemoveConstraint(
            model_name='resultscohort',
            name='results_cohort_first_unique',
        ),
        migrations.AddField(
            model_name='resultscohort',
            name='step',
            field=models.PositiveSmallIntegerField(db_default=0, default=0, help_text='0: every step (the group); k: journey step k.'),
        ),
        migrations.AddField(
            model_name='resultscohort',
            name='variant',
            field=models.CharField(blank=True, db_default='', default='', max_length=40),
        ),
        migrations.AddConstraint(
            model_name='resultscohort',
            constraint=models.UniqueConstraint(condition=models.Q(('previous_date__isnull', False)), fields=('day', 'measure', 'step', 'variant', 'previous_date'), name='results_cohort_unique'),
        ),
        migrations.AddConstraint(
            model_name='resultscohort',
            constraint=models.UniqueConstraint(condition=models.Q(('previous_date__isnull', True)), fields=('day', 'measure', 'step', 'variant'), name='results_cohort_first_unique'),
        ),
        migrations.AddConstraint(
            model_name='resultscohort',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('step', 0), ('variant', '')), models.Q(('measure__in', ['reached', 'reached_back']), ('step__gte', 1), ('step__lte', 5)), _connector='OR'), name='results_cohort_step_valid'),
        ),
        migrations.RunSQL(COPY_REACHED_AS_STEP_1, reverse_sql=DELETE_STEP_COHORTS),
        migrations.RunSQL(MARK_DAYS_WITH_STEPS_STALE, reverse_sql=migrations.RunSQL.noop),
    ]
