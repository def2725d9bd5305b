-- Every payment lands in exactly one order: the mart's total equals the sum of the staged payments.
with mart as (select sum(amount) as total from {{ ref('orders') }}),
staged as (select sum(amount) as total from {{ ref('stg_payments') }})
select mart.total as mart_total, staged.total as payments_total
from mart cross join staged
where abs(mart.total - staged.total) > 0.001
