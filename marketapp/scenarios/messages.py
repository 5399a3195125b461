"""Validation messages in Russian and English, kept with the schema they describe.

A table rather than the gettext catalog: a definition is validated in the language of the
person who saves it (or of a CLI flag), whatever the current request's locale, and the messages
change together with the rules.
"""

from __future__ import annotations

from typing import Any

_MESSAGES: dict[str, tuple[str, str]] = {
    # code: (English, Russian)
    "not_object": ("The definition must be a JSON object.", "Описание должно быть объектом JSON."),
    "schema_version": (
        "Unsupported schema version {version}; this application reads version {expected}.",
        "Версия схемы {version} не поддерживается; приложение читает версию {expected}.",
    ),
    "missing": ("This field is required.", "Обязательное поле."),
    "extra": ("Unknown field.", "Неизвестное поле."),
    "empty": ("Must not be empty.", "Не может быть пустым."),
    "too_short": (
        "Must be at least {min_length} characters long.",
        "Должно быть не короче {min_length} символов.",
    ),
    "too_long": ("At most {max_length} characters.", "Не длиннее {max_length} символов."),
    "list_empty": ("Add at least one item.", "Добавьте хотя бы один элемент."),
    "list_too_short": (
        "Add at least {min_length} items.",
        "Нужно не меньше {min_length} элементов.",
    ),
    "list_too_long": ("At most {max_length} items.", "Не больше {max_length} элементов."),
    "type": ("Expected {expected}.", "Ожидается {expected}."),
    "choice": ("Must be one of: {expected}.", "Допустимые значения: {expected}."),
    "at_least": ("Must be at least {limit}.", "Должно быть не меньше {limit}."),
    "at_most": ("Must be at most {limit}.", "Должно быть не больше {limit}."),
    "pattern": ("Invalid format.", "Неверный формат."),
    "key_format": (
        "Use lowercase Latin letters, digits, '-' and '_' (starting with a letter, "
        "2-64 characters).",
        "Используйте строчные латинские буквы, цифры, «-» и «_» (начиная с буквы, 2–64 символа).",
    ),
    "name_format": (
        "Use lowercase Latin letters, digits and '_' (starting with a letter, "
        "up to 40 characters).",
        "Используйте строчные латинские буквы, цифры и «_» (начиная с буквы, до 40 символов).",
    ),
    "unknown_step": ('Unknown step type "{tag}".', "Неизвестный тип шага «{tag}»."),
    "no_step_type": ("The step has no type.", "У шага не указан тип."),
    "template": ("Template error: {detail}", "Ошибка в шаблоне: {detail}"),
    "unknown_variable": ('Unknown variable "{name}".', "Неизвестная переменная «{name}»."),
    "variable_entity": (
        'The variable "{name}" needs the entity type {entity}, which the scenario is not for.',
        "Переменной «{name}» нужен тип записи {entity}, а сценарий не для него.",
    ),
    "unknown_attribute": ('"{name}" has no "{attr}".', "У «{name}» нет «{attr}»."),
    "unknown_param": ('Unknown parameter "{name}".', "Неизвестный параметр «{name}»."),
    "unknown_const": ('Unknown constant "{name}".', "Неизвестная константа «{name}»."),
    "unknown_field": (
        '{entity} has no field "{name}".',
        "У типа записи {entity} нет поля «{name}».",
    ),
    "plural_args": (
        "plural takes two forms (English: 'item', 'items') or three (Russian: 'товар', "
        "'товара', 'товаров').",
        "plural принимает две формы (английский: 'item', 'items') или три (русский: 'товар', "
        "'товара', 'товаров').",
    ),
    "date_format": (
        'Unknown date format "{value}": use short, medium, long, full or a pattern such as '
        "'d MMMM'.",
        "Неизвестный формат даты «{value}»: используйте short, medium, long, full или шаблон "
        "вроде 'd MMMM'.",
    ),
    "private_attribute": (
        'Templates cannot read "{name}" (names starting with _ are not available).',
        "Шаблонам недоступно «{name}» (имена, начинающиеся с _, закрыты).",
    ),
    "fields_list": ("Invalid list of fields: {detail}", "Неверный список полей: {detail}"),
    "percent_sum": (
        "The percentages must add up to 100 (now {total}).",
        "Сумма процентов должна быть 100 (сейчас {total}).",
    ),
    "empty_branch": ("The branch has no steps.", "В ветке нет шагов."),
    "all_branches_empty": ("Every branch is empty.", "Все ветки пустые."),
    "duplicate": ('"{value}" is repeated.', "«{value}» повторяется."),
    "min_above_max": ("The minimum is greater than the maximum.", "Минимум больше максимума."),
    "below_min": ("Less than the minimum ({limit}).", "Меньше минимума ({limit})."),
    "above_max": ("More than the maximum ({limit}).", "Больше максимума ({limit})."),
    "not_option": ('"{value}" is not one of the options.', "«{value}» нет среди вариантов."),
    "bad_value": (
        "Not a valid value for a {type} parameter.",
        "Недопустимое значение для параметра типа {type}.",
    ),
    "not_applicable": (
        "Not used by {type} parameters.",
        "Не используется в параметрах типа {type}.",
    ),
    "needs_options": (
        "A select parameter needs at least one option.",
        "Для параметра-списка нужен хотя бы один вариант.",
    ),
    "time_format": ("Use the HH:MM format.", "Укажите время в формате ЧЧ:ММ."),
    "wait_zero": ("The wait must be longer than zero.", "Ожидание должно быть больше нуля."),
    "wait_too_long": (
        "A wait lasts at most {days} days.",
        "Ожидание может длиться не больше {days} дней.",
    ),
    "wait_needs": ("Required for this kind of wait.", "Обязательно для этого вида ожидания."),
    "wait_unused": ("Not used by this kind of wait.", "Не используется в этом виде ожидания."),
    "together_control": (
        "Only actions can run together with the previous step.",
        "Одновременно с предыдущим шагом может выполняться только действие.",
    ),
    "together_after_control": (
        "The previous step is not an action: this step can only run after it.",
        "Предыдущий шаг — не действие: этот шаг может выполняться только после него.",
    ),
    "after_stop": (
        "This step comes after a stop and never runs.",
        "Этот шаг стоит после остановки и никогда не выполнится.",
    ),
    "too_deep": (
        "Branches are nested too deeply (at most {limit} levels).",
        "Ветки вложены слишком глубоко (не больше {limit} уровней).",
    ),
    "too_many_steps": (
        "Too many steps (at most {limit}).",
        "Слишком много шагов (не больше {limit}).",
    ),
    "employee_id": ("Give the employee's id.", "Укажите идентификатор сотрудника."),
    "employee_param": (
        "Give an employee parameter.",
        "Укажите параметр с сотрудником.",
    ),
    "not_employee_param": (
        'The parameter "{name}" is not of the employee type.',
        "Параметр «{name}» не относится к типу «сотрудник».",
    ),
    "not_date_param": (
        'The parameter "{name}" is not a date.',
        "Параметр «{name}» — не дата.",
    ),
    "operand": (
        "Give exactly one of: field, param, const, var, value.",
        "Укажите ровно одно из: field, param, const, var, value.",
    ),
    "needs_right": (
        "This comparison needs a second operand.",
        "Для этого сравнения нужен второй операнд.",
    ),
    "no_right": (
        "This comparison takes no second operand.",
        "Для этого сравнения второй операнд не нужен.",
    ),
    "invalid": ("Invalid value: {detail}", "Недопустимое значение: {detail}"),
    # Variables and the expressions of the set-variable step.
    "unknown_var": ('Unknown variable "{name}".', "Неизвестная переменная «{name}»."),
    "bad_typed_value": ("Not a valid {type} value.", "Недопустимое значение типа {type}."),
    "var_type": (
        "The expression gives {actual}, the variable holds {expected}.",
        "Выражение даёт {actual}, а переменная хранит {expected}.",
    ),
    "expr_at": ("{detail} (character {position})", "{detail} (символ {position})"),
    "expr_empty": ("The expression is empty.", "Выражение пустое."),
    "expr_too_long": (
        "The expression is longer than {limit} characters.",
        "Выражение длиннее {limit} символов.",
    ),
    "expr_too_deep": (
        "The expression is nested too deeply (at most {limit} levels).",
        "Выражение вложено слишком глубоко (не больше {limit} уровней).",
    ),
    "expr_character": ('Unexpected character "{char}".', "Неожиданный символ «{char}»."),
    "expr_bad_number": ('Invalid number "{text}".', "Неверное число «{text}»."),
    "expr_unclosed_text": ("The text is not closed with a quote.", "Текст не закрыт кавычкой."),
    "expr_unexpected": ('Unexpected "{token}".', "Неожиданное «{token}»."),
    "expr_expected": (
        'Expected "{expected}", not "{token}".',
        "Ожидается «{expected}», а не «{token}».",
    ),
    "expr_end": ("The expression ends too early.", "Выражение обрывается."),
    "expr_chained": (
        "Comparisons do not chain: join them with and.",
        "Сравнения нельзя записывать цепочкой: соедините их через and.",
    ),
    "expr_unknown_name": (
        'Unknown name "{name}": use record.FIELD, params.key, const.code or var.name.',
        "Неизвестное имя «{name}»: используйте record.ПОЛЕ, params.ключ, const.код или var.имя.",
    ),
    "expr_unknown_root": (
        '"{name}." is not readable here: use record., params., const. or var.',
        "«{name}.» здесь недоступно: используйте record., params., const. или var.",
    ),
    "expr_unknown_function": ('Unknown function "{name}".', "Неизвестная функция «{name}»."),
    "expr_arguments": (
        "{name} takes {count} arguments.",
        "Функция {name} принимает аргументов: {count}.",
    ),
    "expr_not_number": (
        'Expected a number, not "{value}" (join texts with &).',
        "Ожидается число, а не «{value}» (текст соединяется через &).",
    ),
    "expr_not_boolean": (
        'Expected true or false, not "{value}".',
        "Ожидается true или false, а не «{value}».",
    ),
    "expr_division_by_zero": ("Division by zero.", "Деление на ноль."),
    "expr_out_of_range": (
        "The number is out of range (at most {limit} in size).",
        "Число вне допустимого диапазона (по модулю не больше {limit}).",
    ),
    "expr_text_too_long": (
        "The text is longer than {limit} characters.",
        "Текст длиннее {limit} символов.",
    ),
    "expr_too_many_steps": (
        "The expression takes more than {limit} steps.",
        "Вычисление выражения занимает больше {limit} шагов.",
    ),
    "expr_round_places": (
        "round takes 0 to {limit} decimal places.",
        "round округляет до 0–{limit} знаков после запятой.",
    ),
    "expr_no_constant": ('The constant "{name}" is not set.', "Константа «{name}» не задана."),
    "expr_no_variable": (
        'The variable "{name}" is not declared.',
        "Переменная «{name}» не объявлена.",
    ),
    "expr_not_whole": (
        '"{value}" is not a whole number: use round().',
        "«{value}» — не целое число: используйте round().",
    ),
    "expr_not_date": ('"{value}" is not a date (YYYY-MM-DD).', "«{value}» — не дата (ГГГГ-ММ-ДД)."),
}

# How a type is named in "Expected …".
_TYPES: dict[str, tuple[str, str]] = {
    "string": ("text", "текст"),
    "integer": ("a whole number", "целое число"),
    "number": ("a number", "число"),
    "boolean": ("true or false", "true или false"),
    "list": ("a list", "список"),
    "object": ("an object", "объект"),
    "text": ("text", "текст"),
    "date": ("a date", "дату"),
}


def message(language: str, code: str, **values: Any) -> str:
    """The message ``code`` in ``language`` (``ru`` or English), with ``values`` filled in."""
    english, russian = _MESSAGES[code]
    text = russian if language.startswith("ru") else english
    return text.format(**values)


def type_name(language: str, kind: str) -> str:
    english, russian = _TYPES.get(kind, (kind, kind))
    return russian if language.startswith("ru") else english


def codes() -> set[str]:
    return set(_MESSAGES)
