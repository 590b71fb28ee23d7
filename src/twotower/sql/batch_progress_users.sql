UPDATE batch_runs SET users_embedded = %s WHERE id = %s;
