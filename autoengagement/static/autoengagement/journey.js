'use strict';
// The config change form's Journey section: add steps and variants from their blank forms (<template>s whose field
// names hold "__prefix__" for a step and "__variant__" for a variant), move steps (renumbering their ORDER fields)
// and dim removed ones. The server reads the formsets as Django's formsets: without this script, existing steps
// can still be edited and removed.
{
    const steps = (journey) => Array.from(journey.querySelectorAll('.journey-steps > .journey-step'));
    const kept = (items) => items.filter((item) => !item.querySelector(':scope input[name$="-DELETE"]').checked);

    function refresh(journey) {
        const all = steps(journey);
        all.forEach((step, index) => {
            step.querySelector('.journey-step-number').textContent = `Step ${index + 1}`;
        });
        const max = parseInt(journey.querySelector('input[name="steps-MAX_NUM_FORMS"]').value, 10);
        journey.querySelector('.journey-add-step').disabled = kept(all).length >= max;
        for (const step of all) {
            const variants = Array.from(step.querySelectorAll('.journey-variant-list > .journey-variant'));
            const maxVariants = step.querySelector('input[name$="-variants-MAX_NUM_FORMS"]');
            step.querySelector('.journey-add-variant').disabled =
                kept(variants).length >= parseInt(maxVariants.value, 10);
        }
    }

    function addFromTemplate(template, placeholder, total, list) {
        const index = parseInt(total.value, 10);
        list.insertAdjacentHTML('beforeend', template.innerHTML.replaceAll(placeholder, String(index)));
        total.value = String(index + 1);
        const added = list.lastElementChild;
        const first = added.querySelector('input:not([type=hidden]):not([type=checkbox]), textarea');
        if (first) {
            first.focus();
        }
        return added;
    }

    function addStep(journey) {
        const total = journey.querySelector('input[name="steps-TOTAL_FORMS"]');
        const template = journey.querySelector('#journey-step-template');
        addFromTemplate(template, /__prefix__/g, total, journey.querySelector('.journey-steps'));
    }

    function addVariant(step) {
        const total = step.querySelector('input[name$="-variants-TOTAL_FORMS"]');
        const template = step.querySelector('template.journey-variant-template');
        addFromTemplate(template, /__variant__/g, total, step.querySelector('.journey-variant-list'));
    }

    function move(journey, step, direction) {
        const other = direction === 'up' ? step.previousElementSibling : step.nextElementSibling;
        if (!other || !other.matches('.journey-step')) {
            return;
        }
        other.insertAdjacentElement(direction === 'up' ? 'beforebegin' : 'afterend', step);
        steps(journey).forEach((item, index) => {
            item.querySelector('input.journey-order').value = String(index + 1);
        });
    }

    document.addEventListener('click', (event) => {
        const button = event.target.closest('button');
        const journey = button && button.closest('.journey');
        if (!journey) {
            return;
        }
        if (button.matches('.journey-add-step')) {
            addStep(journey);
        } else if (button.matches('.journey-add-variant')) {
            addVariant(button.closest('.journey-step'));
        } else if (button.matches('.journey-move')) {
            move(journey, button.closest('.journey-step'), button.dataset.direction);
        } else {
            return;
        }
        refresh(journey);
    });

    document.addEventListener('change', (event) => {
        const box = event.target;
        const journey = box.closest('.journey');
        if (!journey || !box.name || !box.name.endsWith('-DELETE')) {
            return;
        }
        box.closest('.journey-variant, .journey-step').classList.toggle('journey-removed', box.checked);
        refresh(journey);
    });

    document.addEventListener('DOMContentLoaded', () => {
        document.querySelectorAll('.journey').forEach(refresh);
    });
}
